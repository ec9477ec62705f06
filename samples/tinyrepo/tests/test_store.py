from pebble.protocol import handle_line
from pebble.store import Store


def test_set_get_delete():
    store = Store()
    assert handle_line(store, "SET colour blue") == "OK"
    assert handle_line(store, "GET colour") == "blue"
    assert handle_line(store, "DEL colour") == "OK"
    assert handle_line(store, "GET colour") == "NIL"


def test_snapshot_round_trip(tmp_path):
    store = Store()
    store.set("a", "1")
    store.save(tmp_path / "s.json")
    assert Store.load(tmp_path / "s.json").get("a") == "1"


def test_unknown_command():
    assert handle_line(Store(), "FLY away").startswith("ERR")
