"""Task images: content-hashed builds (``build``), the base image and its Debian bootstrap
(``base``), system packages (``apt``) and CPU platforms (``platforms``)."""
