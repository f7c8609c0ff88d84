"""--peer URLs: anything unusable is refused at start, naming the option."""

from __future__ import annotations

import argparse

import pytest

from dnsfail.cluster.options import from_args


@pytest.mark.parametrize("url", ["http://[::1", "http://h:99999", "http://h:abc", "ftp://x",
                                 "http://", "http://a]b:80"])
def test_an_unusable_peer_url_is_refused_naming_the_option(url: str) -> None:
    args = argparse.Namespace(peer=[url], peer_interval=None, peer_degraded="hold")
    with pytest.raises(ValueError, match="--peer"):
        from_args(args)


def test_a_good_peer_url_is_kept_without_its_slash() -> None:
    args = argparse.Namespace(peer=["http://[::1]:16053/"], peer_interval=None,
                              peer_degraded="hold")
    settings = from_args(args)
    assert settings is not None
    assert settings.peers == ("http://[::1]:16053",)
