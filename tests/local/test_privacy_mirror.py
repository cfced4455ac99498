"""A Debian mirror's credentials reach no command, image history or log (real Docker, real apt)."""
import json
import logging

import pytest

from spmd.images import apt, base as baseimage

pytestmark = pytest.mark.docker

PACKAGE = ("bc",)  # small, absent from the base image, used by no other test


def test_mirror_credentials_stay_out_of_the_system_layer(engine, caplog):
    mirror = apt.debian_mirror(None)
    if mirror is None:
        pytest.fail("this machine's apt names no Debian mirror: scripts/setup.sh runs on Debian, "
                    "whose apt sources name one", pytrace=False)
    scheme, _, rest = mirror.partition("://")
    secret_mirror = f"{scheme}://lab:s3cret-token@{rest}"
    base = baseimage.resolve(None)
    base_id = engine.images.get(base).id
    tag = apt.layer_tag(base_id, PACKAGE, secret_mirror)
    if any(tag in i.tags for i in engine.images.list(name=apt.SYSTEM_REPOSITORY)):
        engine.images.remove(tag)
    with caplog.at_level(logging.DEBUG, logger="spmd"):
        assert apt.ensure_layer(base, base_id, PACKAGE, secret_mirror) == tag
    layer = engine.images.get(tag)
    assert "s3cret" not in json.dumps(layer.attrs) + json.dumps(layer.history())
    assert "s3cret" not in caplog.text
    assert layer.attrs["Config"]["Cmd"] == engine.images.get(base).attrs["Config"]["Cmd"]
    assert b"bc" in engine.containers.run(tag, ["sh", "-c", "command -v bc"], remove=True)
