"""report.md's object table stays readable on city scenes: objects with the same row (one material group) share
a row, and the table is capped with a sentence pointing at materials.json."""
from rftwin.report import object_rows


def test_objects_with_the_same_values_share_one_row_in_first_appearance_order():
    rows = [("wall_a", "| marble | 7.1 ± 0.6 | 0.018 ± 0.006 | no |"), ("roof_a", "| metal | 1 | 1e+07 | no |"),
            ("wall_b", "| marble | 7.1 ± 0.6 | 0.018 ± 0.006 | no |"), ("door", "| wood | 2 | 0.02 | yes |"),
            ("wall_c", "| marble | 7.1 ± 0.6 | 0.018 ± 0.006 | no |"), ("roof_b", "| metal | 1 | 1e+07 | no |")]
    assert object_rows(rows) == ["| 3 objects: wall_a, wall_b, … | marble | 7.1 ± 0.6 | 0.018 ± 0.006 | no |",
                                 "| 2 objects: roof_a, roof_b | metal | 1 | 1e+07 | no |",
                                 "| door | wood | 2 | 0.02 | yes |"]


def test_long_tables_are_capped_and_say_how_many_objects_are_left_out():
    rows = [(f"obj{i}", f"| brick | {i} | 0.03 | no |") for i in range(10)] + [("obj10", "| brick | 0 | 0.03 | no |")]
    out = object_rows(rows, limit=4)
    assert out[:4] == ["| 2 objects: obj0, obj10 | brick | 0 | 0.03 | no |"] + [
        f"| obj{i} | brick | {i} | 0.03 | no |" for i in (1, 2, 3)]
    assert out[4:] == ["", "6 more objects are not listed; materials.json has every object's values."]
    assert object_rows(rows, limit=9)[-1] == "1 more object is not listed; materials.json has every object's values."
