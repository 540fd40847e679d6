"""Benchmarks of entropic-nas: each module is one benchmark, run as ``python -m benchmarks.NAME``.

Run them from the repository root with the project's venv (``.venv/bin/python -m
benchmarks.vgg_pass --quick``); nothing patches the import path. The package may import
``pruning``, ``search_spaces`` and ``nas``; none of those imports ``benchmarks``.

=====================  ==============================================================
``lenet_mnist``        LeNet-5 / MNIST: entropic vs L1 / random vs scratch (the grid)
``lenet_search``       the NAS search on LeNet-5 vs the lenet_mnist grid
``cifar_fast``         the fast CIFAR-10 family: entropic vs Torch-Pruning vs uniform
``gpu_check``          what only a GPU can time (fast recipe, whole passes, a search)
``cifar_paper``        VGG-16 / ResNet-18 bases at real accuracy (on nas.experiment)
``post_training``      pass + recovery (bn / distill / finetune) without retraining
``vgg_pass``           one whole VGG-16 sparsify pass, timed phase by phase
``latency``            original vs pruned latency (VGG-16 / ResNet-18)
``report``             renders ``benchmarks/results/*.json`` into docs/results.md
=====================  ==============================================================

Retired (the question answered, the code removed, the results kept and rendered with the
commit that has the code: ``benchmarks.report.RETIRED``): ``lenet_diagnostics``,
``moments_dtype``, ``solver_cost``, ``latency_costs``, ``train_speed``, ``budget_hit``.

New benchmarks are built on the one experiment runner, :class:`nas.experiment.Experiment`
(named units, one resumable JSON layout ``{"benchmark", "settings", "env", "rows"}``,
trainings resumed per epoch): ``cifar_paper`` and ``post_training`` are; the older modules
follow the pattern below and move onto the runner as they are touched.

The older pattern (``ResultWriter``):

1. ``benchmarks/NAME.py`` with a docstring (what it measures, the command line) and a
   ``main()`` under ``if __name__ == "__main__"``; build its CLI with
   ``common.parser("NAME", ...)`` (``--quick``, ``--out``, ``--device``, ``--threads``) and
   call ``common.setup(args)`` for the device and the environment header.
2. Write results with ``common.ResultWriter`` (``{"benchmark": NAME, "environment",
   "config", "rows", "summary"}``, rewritten atomically after every row through
   :mod:`nas.jsonio`) to ``benchmarks/results/NAME.json``; ``--quick`` smoke runs default to
   ``runs/benchmarks/`` (gitignored) and are never committed.
3. Time engine steps through :mod:`pruning.phases` (``phases.listen(common.PhaseTimer(dev))``)
   or ``torch.profiler`` regions ``entropic.<phase>``, never by wrapping private names.
4. Optionally ``benchmarks/report/NAME.py`` with ``render(runs) -> str`` (markdown; ``runs``
   maps file name -> loaded JSON of that benchmark) registered in
   ``benchmarks/report/__init__.py``'s ``SECTIONS``; without one the report renders the
   JSON generically. Then ``python -m benchmarks.report`` rewrites docs/results.md.
"""
