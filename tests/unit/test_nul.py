from flowctl.domain.nul import has_nul, without_nul


def test_has_nul_looks_into_strings_keys_and_nesting():
    assert has_nul("a\x00b")
    assert has_nul({"k\x00": 1})
    assert has_nul({"a": [1, {"b": ("x", "y\x00")}]})
    assert not has_nul({"a": [1, 2.5, None, True, "\\u0000"]})


def test_without_nul_replaces_only_nul():
    value = {"k\x00": ["a\x00b", 3, None], "plain": "text"}
    assert without_nul(value) == {"k\ufffd": ["a\ufffdb", 3, None], "plain": "text"}
    assert without_nul("clean") == "clean"
    assert not has_nul(without_nul(value))
