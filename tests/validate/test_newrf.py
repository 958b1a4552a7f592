"""NeWRF reference rooms (benchmarks/data/newrf, converted from github.com/LuHaofan/NeWRF) vs rftwin: loader
checks, the pickle converter's allow-list, and a real trace of three bedroom links."""
from __future__ import annotations

import importlib.util
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from rftwin.validate.newrf_study import NewrfSettings, compare_room, load_room

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "benchmarks" / "data" / "newrf"


def _converter():
    spec = importlib.util.spec_from_file_location("newrf_convert", ROOT / "benchmarks" / "newrf_convert.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_load_room_and_its_errors(tmp_path):
    room = load_room(DATA / "bedroom.npz", links=3)
    assert room.num_links == 3 and room.frequency_hz == pytest.approx(2.412e9)
    assert len(room.ray_coefficient) == room.ray_offsets[-1] == len(room.ray_last_point)
    np.savez(tmp_path / "partial.npz", tx_pos=np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"partial\.npz: missing arrays rx_pos"):
        load_room(tmp_path / "partial.npz")
    with np.load(DATA / "bedroom.npz") as d:
        arrays = {k: d[k] for k in d}
    arrays["tx_pos"] = np.array([object()], dtype=object)  # only loadable with pickle
    np.savez(tmp_path / "objects.npz", **arrays)
    with pytest.raises(ValueError, match=r"objects\.npz: .*allow_pickle"):
        load_room(tmp_path / "objects.npz")


def test_converter_refuses_globals_outside_the_allow_list():
    conv = _converter()
    data = pickle.dumps(OrderedDict(a=1))
    assert ("collections", "OrderedDict") in conv.pickle_globals(data)
    import io

    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict is not on the allow-list"):
        conv.DataOnlyUnpickler(io.BytesIO(data)).load()


def test_bedroom_links_match_newrf_rays(tmp_path):
    room = load_room(DATA / "bedroom.npz", links=3)
    r = compare_room(room, NewrfSettings(samples_per_src=20_000), tmp_path)
    assert r["newrf_unmatched"] == 0 and r["newrf_max_order"] == 1  # NeWRF's bedroom: LoS + first order only
    by_order = {o["order"]: o for o in r["per_order"]}
    assert by_order[0]["matched"] == 3 and by_order[1]["matched"] == r["newrf_rays"] - 3
    for o in (0, 1):
        assert abs(by_order[o]["gain_diff_median_db"]) < 0.01  # metal vs NeWRF's free-space-only rays
        assert by_order[o]["phase_other"] == 0  # phases agree up to the reflection sign
    assert by_order[1]["phase_opposite"] > 0  # TE reflections on metal flip the sign; NeWRF keeps none
    assert abs(r["link_incoherent_same_orders_diff_db"]["median"]) < 0.01
