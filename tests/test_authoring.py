"""solutions/ → lessons/: stubs, cleared outputs, kept ids, nbgrader tags, and staleness."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from traitlets.config import PyFileConfigLoader

from gptcourse.authoring import (HIDDEN_BEGIN, HIDDEN_END, NBGRADER_CELL_TIMEOUT,
                                 NBGRADER_CONFIG, NBGRADER_SETTINGS, STUB, AuthoringError,
                                 build_lessons, exercise_cells, graded_check, lesson_from_solution,
                                 lesson_sources, nbgrader_source, notebook_text, stub_source)
from gptcourse.cli import main
from gptcourse.exercises import registry

ROOT = Path(__file__).resolve().parents[1]

SOLUTION_CELL = '''def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    y = x + x
    return y
    ### END SOLUTION'''


def solution_notebook():
    answer = new_code_cell(SOLUTION_CELL, execution_count=3,
                           outputs=[new_output("stream", name="stdout", text="hi\n")])
    checked = new_code_cell('check("welcome.double", double)', execution_count=4,
                            metadata={"tags": ["nbval-check-output", "keep-me"]})
    return new_notebook(cells=[new_markdown_cell("# Title"), answer, checked],
                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                 "language": "python"},
                                  "widgets": {"state": "big"}})


def test_solution_regions_become_indented_stubs():
    stubbed = stub_source(SOLUTION_CELL)
    assert stubbed.splitlines() == [
        "def double(x):", '    """Twice x."""', "    # YOUR CODE HERE",
        '    raise NotImplementedError("Replace this line with your code, then run the check '
        'below.")']


def test_two_regions_in_one_cell_and_text_around_them_are_kept():
    source = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3\n" \
             "### BEGIN SOLUTION\nd = 4\n### END SOLUTION"
    lines = stub_source(source).splitlines()
    assert lines[0] == "a = 1" and lines[3] == "c = 3" and lines.count("# YOUR CODE HERE") == 2
    assert "b = 2" not in lines and "d = 4" not in lines


@pytest.mark.parametrize("source, says", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another solution"),
])
def test_unbalanced_markers_are_an_authoring_error(source, says):
    with pytest.raises(AuthoringError, match=says):
        stub_source(source)


def test_the_lesson_clears_outputs_keeps_ids_and_tags_the_exercise():
    solution = solution_notebook()
    lesson = lesson_from_solution(solution)
    assert [c.id for c in lesson.cells] == [c.id for c in solution.cells]
    assert all(c.outputs == [] and c.execution_count is None
               for c in lesson.cells if c.cell_type == "code")
    answer, checked = lesson.cells[1], lesson.cells[2]
    assert "y = x + x" not in answer.source and "NotImplementedError" in answer.source
    assert answer.metadata.nbgrader == {"grade": False, "grade_id": "welcome_double",
                                        "locked": False, "schema_version": 3,
                                        "solution": True, "task": False}
    assert answer.metadata.gptcourse == {"exercise": "welcome.double", "role": "solution"}
    assert checked.metadata.nbgrader["locked"] and not checked.metadata.nbgrader["solution"]
    assert checked.metadata.gptcourse == {"exercise": "welcome.double", "role": "check"}
    assert checked.metadata.tags == ["keep-me"]  # output-comparison tags go with the outputs
    assert "widgets" not in lesson.metadata and lesson.metadata.kernelspec.name == "python3"
    assert "y = x + x" in solution.cells[1].source  # the source is left as it was
    nbformat.validate(lesson)


def test_a_solution_without_a_check_after_it_is_an_authoring_error():
    nb = solution_notebook()
    nb.cells.pop()
    with pytest.raises(AuthoringError, match="calls no check"):
        lesson_from_solution(nb)


def test_build_writes_lessons_and_check_reports_staleness(tmp_path, capsys):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    solutions.mkdir()
    nbformat.write(solution_notebook(), solutions / "00_welcome.ipynb")
    args = ["--solutions", str(solutions), "--lessons", str(lessons)]

    assert main(["build-lessons", "--check", *args]) == 1
    assert not lessons.exists()  # --check writes nothing
    assert main(["build-lessons", *args]) == 0
    assert main(["build-lessons", "--check", *args]) == 0

    nb = nbformat.read(solutions / "00_welcome.ipynb", 4)
    nb.cells[0].source = "# A new title"
    nbformat.write(nb, solutions / "00_welcome.ipynb")
    assert main(["build-lessons", "--check", *args]) == 1
    assert "out of date" in capsys.readouterr().err

    main(["build-lessons", *args])
    (lessons / "99_stray.ipynb").write_text(notebook_text(nb))
    assert main(["build-lessons", "--check", *args]) == 1
    assert "99_stray.ipynb: no solutions/99_stray.ipynb generates it" in capsys.readouterr().err


def test_a_malformed_solution_names_the_file(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "00_welcome.ipynb").write_text("{not json")
    assert main(["build-lessons", "--solutions", str(tmp_path / "solutions"),
                 "--lessons", str(tmp_path / "lessons")]) == 2
    assert "00_welcome.ipynb is not a valid Jupyter notebook" in capsys.readouterr().err
    assert not (tmp_path / "lessons").exists()


def test_the_repositorys_lessons_are_what_its_solutions_generate():
    build = build_lessons(ROOT / "solutions", ROOT / "lessons", check=True)
    assert build.changed == [] and build.orphans == [], \
        "lessons/ is stale: run `gptcourse build-lessons`"


def test_every_solution_check_cell_compares_its_output_under_nbval():
    """nbval runs solutions/ in lax mode and compares only tagged cells: the tag on each
    exercise's check cell is what makes a solution whose check fails a failing test."""
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, 4)
        lesson = lesson_from_solution(nb)
        for solution_cell, lesson_cell in zip(nb.cells, lesson.cells):
            if lesson_cell.metadata.get("gptcourse", {}).get("role") == "check":
                assert "nbval-check-output" in solution_cell.metadata.get("tags", []), \
                    f"{path.name}: the check cell of {lesson_cell.metadata.gptcourse['exercise']}"
                assert "✓" in "".join(o.get("data", {}).get("text/plain", "")
                                      for o in solution_cell.outputs), \
                    f"{path.name}: the stored output of a check cell is not a pass"


def test_an_nbgrader_course_has_one_assignment_per_lesson_and_a_config(tmp_path):
    course = tmp_path / "course"
    assert main(["build-lessons", "--nbgrader-source", str(course), "--solutions",
                 str(ROOT / "solutions"), "--lessons", str(tmp_path / "lessons")]) == 0
    solutions = sorted((ROOT / "solutions").glob("*.ipynb"))
    assert sorted(p.relative_to(course) for p in course.rglob("*.ipynb")) == \
        [Path("source") / s.stem / s.name for s in solutions]
    config = PyFileConfigLoader("nbgrader_config.py", str(course)).load_config()
    assert config.ClearSolutions.code_stub == {"python": STUB}
    assert config.Execute.timeout == NBGRADER_CELL_TIMEOUT >= 180  # a lesson's whole budget


def test_in_the_nbgrader_source_each_check_cell_is_a_test_worth_its_points():
    solution = nbformat.read(ROOT / "solutions" / "07_pretraining.ipynb", 4)
    source = nbgrader_source(solution, "07_pretraining.ipynb")
    plain = lesson_from_solution(solution, stubs=False)
    checks = exercise_cells(solution)
    assert [e for _, _, e in checks] == [e.id for e in registry.of_lesson("pretraining")]
    for solution_index, check_index, exercise in checks:
        cell = source.cells[check_index]
        assert cell.metadata.nbgrader["grade"] and cell.metadata.nbgrader["locked"]
        assert cell.metadata.nbgrader["points"] == registry[exercise].points
        visible, hidden = cell.source.split(HIDDEN_BEGIN)
        assert visible == plain.cells[check_index].source + "\n" and HIDDEN_END in hidden
        name = exercise.split(".")[1]
        assert f'_course_check("{exercise}", {name})' in hidden and "assert _verdict.passed" in hidden
        assert source.cells[solution_index] == plain.cells[solution_index]  # the solution stays
    others = [i for i in range(len(plain.cells)) if i not in {c for _, c, _ in checks}]
    assert all(source.cells[i] == plain.cells[i] for i in others)


def test_the_hidden_test_repeats_the_check_call_exactly():
    source = 'x = 1\ncheck("welcome.softmax", my_softmax, seed=3)'
    assert "_verdict = _course_check(\"welcome.softmax\", my_softmax, seed=3)" in \
        graded_check(source, "welcome.softmax")
    with pytest.raises(AuthoringError, match="no check\\('welcome.softmax'"):
        graded_check('check("welcome.other", f)', "welcome.softmax")


def test_a_check_of_an_unknown_exercise_is_an_authoring_error():
    with pytest.raises(AuthoringError, match="no registered exercise"):
        nbgrader_source(solution_notebook())  # welcome.double is made up


@pytest.mark.parametrize("lesson", ["0", "00", "welcome", "00_welcome"])
def test_one_lesson_is_picked_by_number_or_name(lesson):
    assert lesson_sources(ROOT / "solutions", lesson) == [ROOT / "solutions" / "00_welcome.ipynb"]


def test_an_unknown_lesson_or_a_lesson_with_nothing_to_pick_for_is_refused(tmp_path, capsys):
    args = ["--solutions", str(ROOT / "solutions"), "--lessons", str(tmp_path / "lessons")]
    assert main(["build-lessons", "--nbgrader-source", str(tmp_path), "--lesson", "42",
                 *args]) == 2
    assert "no lesson '42'" in capsys.readouterr().err
    assert main(["build-lessons", "--lesson", "00", *args]) == 2
    assert "pass one of them too" in capsys.readouterr().err
    assert not (tmp_path / "lessons").exists()


def test_run_solutions_with_a_lesson_re_runs_only_that_one(tmp_path, capsys):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    for name in ("00_welcome.ipynb", "01_tokenization.ipynb"):
        (solutions / name).write_bytes((ROOT / "solutions" / name).read_bytes())
    before = (solutions / "01_tokenization.ipynb").read_bytes()
    assert main(["build-lessons", "--run-solutions", "--lesson", "00", "--solutions",
                 str(solutions), "--lessons", str(tmp_path / "lessons")]) == 0
    err = capsys.readouterr().err
    assert "00_welcome.ipynb" in err and "01_tokenization" not in err
    assert (solutions / "01_tokenization.ipynb").read_bytes() == before
    assert (tmp_path / "lessons" / "00_welcome.ipynb").exists()


def test_the_instructors_own_nbgrader_config_is_kept(tmp_path, capsys):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.Exchange.root = 'x'\n")
    args = ["build-lessons", "--nbgrader-source", str(tmp_path), "--lesson", "00",
            "--solutions", str(ROOT / "solutions"), "--lessons", str(tmp_path / "lessons")]
    assert main(args) == 0
    assert (tmp_path / "nbgrader_config.py").read_text() == \
        "c = get_config()\nc.Exchange.root = 'x'\n"
    assert "add:\n" + NBGRADER_SETTINGS in capsys.readouterr().err
    (tmp_path / "nbgrader_config.py").write_text(NBGRADER_CONFIG + "c.Exchange.root = 'x'\n")
    assert main(args) == 0
    assert "add:" not in capsys.readouterr().err
