"""The `gptcourse` command.

  gptcourse build-lessons [--check] [--run-solutions]   solutions/ → lessons/
          [--nbgrader-source COURSE_DIR] [--lesson NN]   and an nbgrader course
  gptcourse check NOTEBOOK.ipynb                         run a notebook, print its verdicts
  gptcourse grade SUBMISSIONS_DIR --out RESULTS_DIR      grade submitted notebooks (untrusted)
  gptcourse grade --merge RESULTS_DIR                    gradebooks from `--shard K/N` runs
  gptcourse progress RESULTS_DIR                         exercises × learners, table + heatmap
  gptcourse train --out DIR [--resume] [--ship]          pretrain a GPT (the course model's recipe)
  gptcourse train --stage sft --out DIR [--ship]         fine-tune it (the SFT model's recipe)
  gptcourse train --stage rlhf --out DIR [--ship]        reward model and PPO (lesson 09's)
  gptcourse train --stage dpo|grpo|compare --out DIR [--ship]   lesson 10's DPO and GRPO
                                                         models, and PPO vs DPO vs GRPO

Exit codes: 0 success; 1 something to fix (a failed check, a stale lesson); 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptcourse.exercises.result import FAILED, NOT_ATTEMPTED, PASSED

_STATUS_WORDS = {PASSED: "passed", FAILED: "failed", NOT_ATTEMPTED: "not attempted"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gptcourse", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build-lessons", help="write lessons/ from solutions/")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if lessons/ is not what solutions/ generates")
    build.add_argument("--run-solutions", action="store_true",
                       help="first re-run every solution notebook, refreshing its outputs")
    build.add_argument("--nbgrader-source", type=Path, metavar="COURSE_DIR",
                       help="also write an nbgrader course to COURSE_DIR: source/NN_topic/, "
                            "one assignment per lesson, whose check cells are autograder "
                            "tests worth the exercise's points, and nbgrader_config.py "
                            "(nbgrader's generate_assignment makes the release)")
    build.add_argument("--lesson", metavar="NN",
                       help="with --run-solutions or --nbgrader-source: only this lesson "
                            "(07, pretraining)")
    build.add_argument("--solutions", type=Path, default=Path("solutions"))
    build.add_argument("--lessons", type=Path, default=Path("lessons"))

    check = commands.add_parser("check", help="run a notebook and print its check verdicts")
    check.add_argument("notebook", type=Path)
    check.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")

    grade = commands.add_parser("grade", help="grade a folder of submitted notebooks")
    grade.add_argument("submissions", type=Path, metavar="SUBMISSIONS_DIR", nargs="?",
                       help="every .ipynb below it: one learner per file or per sub-folder")
    grade.add_argument("--out", type=Path, metavar="RESULTS_DIR",
                       help="where the records, gradebooks and feedback pages go")
    grade.add_argument("--jobs", type=int, default=1, help="notebooks graded at once")
    grade.add_argument("--timeout", type=float, default=300,
                       help="seconds per notebook, running it and its functions (default 300; "
                            "a lesson runs in at most 180)")
    grade.add_argument("--memory", type=int, default=2048, metavar="MIB",
                       help="memory limit per notebook in MiB (enforced on Linux only)")
    grade.add_argument("--force", action="store_true",
                       help="grade again notebooks already graded in RESULTS_DIR")
    grade.add_argument("--shard", metavar="K/N", default=None,
                       help="grade only shard K of N, a stable share of the notebooks (by "
                            "path); shards may run at once, on other machines, into one "
                            "RESULTS_DIR; they write records only, then run --merge")
    grade.add_argument("--merge", type=Path, metavar="RESULTS_DIR", default=None,
                       help="grade nothing: write the gradebooks, feedback pages and "
                            "instructor's log from every record in RESULTS_DIR (after shards)")

    progress = commands.add_parser("progress", help="where the room is: exercises × learners")
    progress.add_argument("results", type=Path, metavar="RESULTS_DIR")
    progress.add_argument("--png", type=Path, default=None,
                          help="heatmap file (default RESULTS_DIR/progress.png)")

    train = commands.add_parser("train", help="pretrain a GPT, by default with the course "
                                              "model's recipe (as lesson 07 does)")
    train.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="where the run writes checkpoint.pt (at every evaluation) and "
                            "training_log.json")
    train.add_argument("--steps", type=int, default=None,
                       help="length of the learning-rate schedule (default: the recipe's)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved in DIR/checkpoint.pt on the same curve")
    train.add_argument("--seed", type=int, default=None, help="seed (default: the recipe's, 0)")
    train.add_argument("--device", default=None,
                       help="cpu, cuda or mps (default: CUDA when present, else the CPU)")
    train.add_argument("--text", type=Path, default=None, metavar="FILE",
                       help="train on this UTF-8 text file instead of the generated stories")
    train.add_argument("--ship", action="store_true",
                       help="at the end, write the model into the package as the course model")
    train.add_argument("--stage", choices=("pretrain", "sft", "rlhf", "dpo", "grpo", "compare"),
                       default="pretrain",
                       help="pretrain (default); sft: fine-tune the shipped course model "
                            "into the SFT model of lesson 08; rlhf: from the shipped SFT "
                            "model, lesson 09's preference pairs, reward model and PPO runs; "
                            "dpo, grpo: lesson 10's models, from the SFT model; compare: "
                            "PPO, DPO and GRPO on the same budget, three seeds each")

    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            stages = {"sft": _train_sft, "rlhf": _train_rlhf, "dpo": _train_lesson10,
                      "grpo": _train_lesson10, "compare": _train_lesson10}
            return stages.get(args.stage, _train)(args)
        if args.command == "build-lessons":
            return _build_lessons(args)
        if args.command == "grade":
            return _grade(args)
        if args.command == "progress":
            return _progress(args)
        return _check(args)
    except ValueError as exc:  # bad input: say what, exit 2, write nothing
        print(f"gptcourse {args.command}: {exc}", file=sys.stderr)
        return 2


def _build_lessons(args) -> int:
    from gptcourse.authoring import (NBGRADER_SETTINGS, build_lessons, lesson_sources,
                                     notebook_text, read_notebook, write_atomically,
                                     write_nbgrader_course)
    from gptcourse.execution import execute

    if not args.solutions.is_dir():
        raise ValueError(f"no folder {args.solutions}/ here; run this in the course's top "
                         f"folder, or pass --solutions")
    if args.lesson is not None and not (args.run_solutions or args.nbgrader_source):
        raise ValueError("--lesson picks the lesson that --run-solutions re-runs or "
                         "--nbgrader-source writes; pass one of them too")
    if args.run_solutions:
        for path in lesson_sources(args.solutions, args.lesson):
            print(f"running {path} ...", file=sys.stderr, flush=True)
            run = execute(read_notebook(path), path.parent, allow_errors=False)
            write_atomically(path, notebook_text(run.notebook))
            print(f"  {run.seconds:.1f} s", file=sys.stderr)
    if args.nbgrader_source:
        course = write_nbgrader_course(args.solutions, args.nbgrader_source, args.lesson)
        for path in course.notebooks:
            print(f"wrote {path}")
        if course.config_written:
            print(f"wrote {course.config}")
        elif course.config_lacks_settings:
            print(f"kept your {course.config}; for nbgrader's release to match lessons/ and "
                  f"lesson 07 to finish in time, add:\n{NBGRADER_SETTINGS}", file=sys.stderr)
    build = build_lessons(args.solutions, args.lessons, check=args.check)
    for orphan in build.orphans:
        print(f"{orphan}: no solutions/{orphan.name} generates it (delete it, or add the "
              f"solution)", file=sys.stderr)
    if args.check:
        for path in build.changed:
            print(f"{path} is out of date with solutions/; run: gptcourse build-lessons",
                  file=sys.stderr)
        return 1 if build.changed or build.orphans else 0
    for path in build.changed:
        print(f"wrote {path}")
    return 1 if build.orphans else 0


def _check(args) -> int:
    from gptcourse.authoring import exercises_in, read_notebook
    from gptcourse.course import lesson_of_notebook
    from gptcourse.execution import execute
    from gptcourse.exercises import registry

    nb = read_notebook(args.notebook)
    print(f"running {args.notebook} ...", file=sys.stderr, flush=True)
    run = execute(nb, args.notebook.resolve().parent, timeout=args.timeout)
    results = dict(run.results)
    # The lesson's exercises, from the cells' metadata (a renamed copy keeps it) or the name.
    lesson = lesson_of_notebook(args.notebook.name)
    expected = dict.fromkeys([*exercises_in(nb), *(e.id for e in registry.of_lesson(lesson.name))]
                             if lesson else exercises_in(nb))
    never_checked = [registry[i] for i in expected if i not in results and i in registry]

    rows = [(r.exercise, _STATUS_WORDS[r.status], f"{r.score}/{r.points}")
            for r in results.values()]
    rows += [(e.id, "never checked", f"0/{e.points}") for e in never_checked]
    score = sum(r.score for r in results.values())
    total = sum(r.points for r in results.values()) + sum(e.points for e in never_checked)
    width = max([len("exercise")] + [len(row[0]) for row in rows])
    print(f"{args.notebook}: ran in {run.seconds:.1f} s")
    print(f"{'exercise':<{width}}  {'status':<14} points")
    for exercise, status, points in rows:
        print(f"{exercise:<{width}}  {status:<14} {points}")
    print(f"{'total':<{width}}  {'':<14} {score}/{total}")
    failed = [r for r in results.values() if r.status == FAILED]
    for result in failed:
        print(f"\n{result}")
    for error in run.errors:
        print(f"\n{args.notebook}: {error}")
    return 1 if failed or run.errors else 0


def _grade(args) -> int:
    from gptcourse.grading import Limits, grade, merge, parse_shard
    from gptcourse.grading.kernel import memory_limit_supported

    if args.merge is not None:
        if args.submissions is not None or args.out is not None or args.shard is not None:
            raise ValueError("--merge RESULTS_DIR grades nothing: leave out SUBMISSIONS_DIR, "
                             "--out and --shard")
        batch, out = merge(args.merge), args.merge
        print(f"merged {len(batch.records)} record(s) of "
              f"{len({r['learner'] for r in batch.records})} learner(s)")
        return _print_results(out, batch)
    if args.submissions is None or args.out is None:
        raise ValueError("give the submissions folder and --out RESULTS_DIR (or --merge "
                         "RESULTS_DIR to write the gradebooks of sharded runs)")
    if args.jobs < 1 or args.timeout <= 0:
        raise ValueError("--jobs must be at least 1 and --timeout above 0")
    shard = parse_shard(args.shard) if args.shard is not None else None
    if not memory_limit_supported():
        print(f"gptcourse grade: the memory limit is not enforced on {sys.platform}; only the "
              f"time limit is (run the grader on Linux for both)", file=sys.stderr)
    batch = grade(args.submissions, args.out, jobs=args.jobs, force=args.force, shard=shard,
                  limits=Limits(timeout=args.timeout, memory_mb=args.memory))
    learners = {r["learner"] for r in batch.rows}
    which = f"shard {shard[0]}/{shard[1]}: " if shard else ""
    print(f"{which}graded {batch.graded} notebook(s), skipped {batch.skipped} already graded "
          f"(--force grades them again); {len(learners)} learner(s)")
    if shard:
        print(f"records: {args.out / 'submissions'}/; once every shard has finished, write "
              f"the gradebooks with: gptcourse grade --merge {args.out}")
        return 0
    return _print_results(args.out, batch)


def _print_results(out: Path, batch) -> int:
    from gptcourse.grading import ERROR

    errors = sorted({r["learner"] for r in batch.rows if r["status"] == ERROR})
    print(f"gradebook: {out / 'gradebook.csv'} (and .json); one row per learner, for an LMS: "
          f"{out / 'gradebook_learners.csv'}")
    print(f"feedback: {out / 'feedback'}/; for the instructor: {out / 'instructor_log.txt'}")
    if errors:
        print(f"not graded, see their feedback: {', '.join(errors)}")
    return 0


def _progress(args) -> int:
    from gptcourse.grading.progress import heatmap, load_progress, text_table

    if not (args.results / "submissions").is_dir():
        raise ValueError(f"{args.results} holds no results; run gptcourse grade first")
    progress = load_progress(args.results)
    print(text_table(progress))
    png = heatmap(progress, args.png or args.results / "progress.png")
    print(f"heatmap: {png}")
    return 0


def _train(args) -> int:
    import dataclasses
    import json
    import shlex

    from gptcourse import distributed
    from gptcourse.atomic import write_atomically
    from gptcourse.checkpoint import load_checkpoint, save_checkpoint
    from gptcourse.course_model import RECIPE, course_data, ship
    from gptcourse.data import load_corpus
    from gptcourse.model import GPTConfig
    from gptcourse.pretraining import (TrainingAborted, TrainingRun, check_token_counts,
                                       check_training_text, pick_device, train)

    # Under torchrun every process runs this; only the main one prints and writes.
    replicas = distributed.join(pick_device(args.device))
    main = replicas is None or replicas.is_main
    say = print if main else (lambda *_, **__: None)
    checkpoint = args.out / "checkpoint.pt"
    if args.ship and args.text is not None:
        raise ValueError("--ship writes the course model, which is trained on the course "
                         "corpus: leave out --text")
    if args.resume:
        if args.steps is not None or args.seed is not None:
            raise ValueError("--resume continues the saved run with its own settings; leave "
                             "out --steps and --seed")
        run = load_checkpoint(checkpoint, device=args.device)
        block_size = run.model.config.block_size
    else:
        if checkpoint.exists():
            raise ValueError(f"{checkpoint} exists: pass --resume to continue it, or choose "
                             f"another --out")
        block_size = GPTConfig().block_size
    if args.text is not None:  # a text too short for one window fails now, not after minutes
        corpus = load_corpus(args.text)
        check_training_text(corpus.train, corpus.val, block_size)
    if args.resume:
        _, train_ids, val_ids = course_data(args.text, tokenizer=run.tokenizer)
        check_token_counts(train_ids, val_ids, block_size)
        say(f"resuming {checkpoint} at step {run.step} of {run.settings.steps}")
    else:
        changes = {} if args.seed is None else {"seed": args.seed}
        if args.steps is not None:  # a shorter run warms up for at most a tenth of it
            changes.update(steps=args.steps, warmup=min(RECIPE.warmup, args.steps // 10))
        settings = dataclasses.replace(RECIPE, **changes)
        tokenizer, train_ids, val_ids = course_data(args.text)
        check_token_counts(train_ids, val_ids, block_size)
        run = TrainingRun.start(tokenizer, settings, device=args.device)
        say(f"training {run.model.num_parameters():,} parameters on "
            f"{len(train_ids):,} tokens for {settings.steps} steps on {run.device}")
    say("Ctrl-C stops after the step under way, saving the run; Ctrl-C twice aborts at once")

    saved_at = []  # the steps of the checkpoints written so far

    def save(run: TrainingRun) -> None:
        save_checkpoint(checkpoint, run)
        saved_at.append(run.step)

    resume = f"gptcourse train --out {shlex.quote(str(args.out))} --resume"
    if replicas is not None:  # all have looked for the checkpoint before rank 0 writes one
        replicas.barrier()
    try:
        train(run, train_ids, val_ids, save=save)
    except TrainingAborted:
        last = (f"{checkpoint} (step {saved_at[-1]}) is whole; continue it with: {resume}"
                if saved_at else "no checkpoint was written")
        say(f"gptcourse train: aborted at step {run.step} (Ctrl-C twice); {last}",
            file=sys.stderr)
        return 130
    last = run.log[-1]
    say(f"step {run.step}: train loss {last['train_loss']:.3f}, validation loss "
        f"{last['val_loss']:.3f}, {run.seconds:.0f} s of training")
    say(f"sample: {last.get('sample', '')!r}")
    log = args.out / "training_log.json"
    if main:
        write_atomically(log, json.dumps(run.log, indent=1) + "\n")
    say(f"saved the model: {checkpoint} (step {run.step}); its losses and samples: {log}")
    if run.step < run.settings.steps:
        say(f"stopped early; continue with: {resume}")
        return 1
    if args.ship and main:
        path = ship(run, command=f"gptcourse train --out {shlex.quote(str(args.out))} --ship")
        say(f"shipped the course model: {path}")
    return 0


def _train_sft(args) -> int:
    import dataclasses
    import json
    import shlex

    from gptcourse.course_model import SFT_RECIPE, ship_sft, train_sft

    if args.resume or args.text is not None:
        raise ValueError("--stage sft fine-tunes the shipped course model on the course's "
                         "tasks from the start: leave out --resume and --text")
    changes = {} if args.seed is None else {"seed": args.seed}
    if args.steps is not None:
        changes.update(steps=args.steps, warmup=min(SFT_RECIPE.warmup, args.steps // 10))
    settings = dataclasses.replace(SFT_RECIPE, **changes)
    run, figures = train_sft(args.out, settings, device=args.device)
    (args.out / "training_log.json").write_text(
        json.dumps({"figures": figures, "log": run.log}, indent=1) + "\n", encoding="utf-8")
    if "sft" not in figures:
        return 1
    if args.ship:
        command = f"gptcourse train --stage sft --out {shlex.quote(str(args.out))} --ship"
        print(f"shipped the SFT model: {ship_sft(run, command, figures, settings=settings)}")
    return 0


def _train_rlhf(args) -> int:
    import shlex

    from gptcourse.course_model.rlhf import ship_rlhf, train_rlhf

    if args.resume or args.text is not None or args.steps is not None or args.seed is not None:
        raise ValueError("--stage rlhf runs lesson 09's recipe as it is, from the shipped SFT "
                         "model: leave out --resume, --text, --steps and --seed")
    train_rlhf(args.out)
    if args.ship:
        command = f"gptcourse train --stage rlhf --out {shlex.quote(str(args.out))} --ship"
        for path in ship_rlhf(args.out, command):
            print(f"shipped {path}")
    return 0


def _train_lesson10(args) -> int:
    import shlex

    from gptcourse.course_model import preference_optimisation as recipes

    if args.resume or args.text is not None or args.steps is not None or args.seed is not None:
        raise ValueError(f"--stage {args.stage} runs lesson 10's recipe as it is, from the "
                         f"shipped SFT model: leave out --resume, --text, --steps and --seed")
    run = {"dpo": recipes.train_dpo_stage, "grpo": recipes.train_grpo_stage,
           "compare": recipes.compare}[args.stage]
    run(args.out)
    if args.ship:
        command = (f"gptcourse train --stage {args.stage} --out "
                   f"{shlex.quote(str(args.out))} --ship")
        for path in recipes.ship(args.stage, args.out, command):
            print(f"shipped {path}")
    return 0
