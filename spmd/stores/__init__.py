"""Object stores: the interface (``object_store``), a directory (``directory``, for
``file://``) and any apache-libcloud driver (``libcloud``)."""
