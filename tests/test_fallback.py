"""The demo cells' fallback: the learner's piece once written, the course's while a stub."""

import pytest

from gptcourse.fallback import yours_if_written, yours_or_course


def stub(*args):
    raise NotImplementedError("write this")


def course(x):
    return x + 1


def test_a_stub_falls_back_to_the_course_and_says_so(capsys):
    assert yours_or_course(stub, lambda: "course", "piece") == "course"
    assert "not written yet" in capsys.readouterr().out
    assert yours_if_written(stub, course, "piece", 1) is course
    assert "Your piece is not written yet" in capsys.readouterr().out


def test_a_written_piece_is_used_and_says_so(capsys):
    def yours(x):
        return x + 1

    assert yours_or_course(lambda: "yours", lambda: "course", "piece") == "yours"
    assert yours_if_written(yours, course, "piece", 1) is yours
    assert capsys.readouterr().out.count("This cell uses your piece") == 2


def test_any_other_error_in_the_learners_piece_is_theirs_to_see():
    def broken(x):
        return x + "one"

    with pytest.raises(TypeError):
        yours_if_written(broken, course, "piece", 1)
