"""solutions/ → lessons/: stubs, cleared outputs, kept ids, nbgrader tags, and staleness."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from gptcourse.authoring import (AuthoringError, build_lessons, lesson_from_solution,
                                 notebook_text, stub_source)
from gptcourse.cli import main

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


def test_an_nbgrader_source_keeps_the_solutions_and_carries_the_tags(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nbformat.write(solution_notebook(), solutions / "00_welcome.ipynb")
    assert main(["build-lessons", "--nbgrader-source", str(tmp_path / "source" / "welcome"),
                 "--solutions", str(solutions), "--lessons", str(tmp_path / "lessons")]) == 0
    source = nbformat.read(tmp_path / "source" / "welcome" / "00_welcome.ipynb", 4)
    answer = source.cells[1]
    assert answer.source == SOLUTION_CELL and answer.outputs == []
    assert answer.metadata.nbgrader["solution"] and answer.metadata.nbgrader["grade_id"] == \
        "welcome_double"
