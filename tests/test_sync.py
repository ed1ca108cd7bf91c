"""Pure checks of the sync helpers: where node paths land on the local provider, which
relative paths a sync accepts, and how a remote listing is read."""

from pathlib import Path

import pytest

from skyhop.errors import UserError
from skyhop.execute.runner import check_relative, confined
from skyhop.execute.ssh_runner import _parse_listing

NODE = Path("/home/u/.skyhop/local/c/node-0")


@pytest.mark.parametrize("path, lands", [
    ("~", NODE), ("~/x", NODE / "x"), ("x/y", NODE / "x/y"), ("/data/x", NODE / "data/x"),
    (f"{NODE}/sky_workdir", NODE / "sky_workdir"), ("/../../etc/x", NODE / "etc/x"),
    ("~/a/../b", NODE / "b"), (f"{NODE}/../node-1/x", NODE / str(NODE.parent)[1:] / "node-1/x"),
])
def test_local_node_paths_land_inside_the_node_folder(path, lands):
    assert confined(NODE, path) == lands


@pytest.mark.parametrize("path", ["~/..", "~/../../x", "../x", "a/../../x",
                                  "~/x\0y"])
def test_local_node_paths_leading_out_are_refused(path):
    with pytest.raises(UserError) as err:
        confined(NODE, path)
    assert "leads outside the local node's folder" in err.value.message


@pytest.mark.parametrize("rel", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "x\0y"])
def test_sync_paths_must_stay_under_their_root(rel):
    with pytest.raises(ValueError):
        check_relative(rel)


def test_a_listing_keeps_any_name_whole():
    out = (b"a\nb\tc\x001\x001700000000.1234567890\x00"
           b"d\n../keep.txt\x002\x001700000001.5\x00")
    assert _parse_listing(out) == {"a\nb\tc": (1, 1_700_000_000_123_456_789),
                                   "d\n../keep.txt": (2, 1_700_000_001_500_000_000)}
    assert _parse_listing(b"") == {}
