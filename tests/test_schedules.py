import pytest

from swapout.schedules import Constant, Explicit, Linear, parse_schedule


@pytest.mark.parametrize("a,b,blocks", [(1, 0.5, 9), (0.5, 1, 9), (1, 0.8, 27), (0.3, 0.7, 15), (0.9, 0.1, 2)])
def test_linear_hits_both_endpoints_exactly(a, b, blocks):
    values = Linear(a, b).values(blocks)
    assert len(values) == blocks
    assert values[0] == a and values[-1] == b
    step = (b - a) / (blocks - 1)
    assert all(abs(values[i] - (a + step * i)) < 1e-12 for i in range(blocks))


def test_linear_single_block_gets_first_end():
    assert Linear(1, 0.5).values(1) == [1.0]


@pytest.mark.parametrize("text,expected", [
    ("linear(1,0.5)", Linear(1, 0.5)), ("Linear(1, 0.5)", Linear(1, 0.5)), (" linear( 0.5 , 1 ) ", Linear(0.5, 1)),
    ("0.8", Constant(0.8)), (0.8, Constant(0.8)), (1, Constant(1.0)),
    ("0.2,0.5,0.8", Explicit((0.2, 0.5, 0.8))), ([0.2, 0.5], Explicit((0.2, 0.5))),
])
def test_parse_paper_notation(text, expected):
    assert parse_schedule(text) == expected


def test_str_round_trips():
    for s in (Linear(1, 0.5), Constant(0.8), Explicit((0.2, 0.5, 0.8))):
        assert parse_schedule(str(s)) == s


def test_constant_and_explicit_values():
    assert Constant(0.5).values(3) == [0.5, 0.5, 0.5]
    assert Explicit((0.1, 0.2)).values(2) == [0.1, 0.2]


@pytest.mark.parametrize("bad", ["linear(1)", "linear(1,2)", "linear(-0.1,1)", "1.5", "-0.2", "abc", "", "0.2,,0.3",
                                 "lin(1,0.5)", "nan", True, None, {"a": 1}, [0.2, 1.2], []])
def test_bad_schedules_raise_value_error(bad):
    with pytest.raises(ValueError):
        parse_schedule(bad)


@pytest.mark.parametrize("bad", [0.5, "0.5", "0.2,0.8", (), None])
def test_explicit_takes_a_list_or_tuple_of_thetas(bad):
    with pytest.raises(ValueError, match="explicit schedule's thetas must"):
        Explicit(bad)


def test_explicit_length_must_match_blocks():
    with pytest.raises(ValueError, match="exactly 3"):
        Explicit((0.1, 0.2)).values(3)


@pytest.mark.parametrize("blocks", [0, -1, 1.5])
def test_bad_block_count(blocks):
    with pytest.raises(ValueError):
        Linear(1, 0.5).values(blocks)
