"""Benchmarks of entropic-nas: each module is one benchmark, run as ``python -m benchmarks.NAME``.

Run them from the repository root with the project's venv (``.venv/bin/python -m
benchmarks.vgg_pass --quick``); nothing patches the import path. The package may import
``pruning``, ``search_spaces`` and ``nas``; none of those imports ``benchmarks``.

=====================  ==============================================================
``lenet_mnist``        LeNet-5 / MNIST: entropic vs L1 / random vs scratch (the grid)
``cifar_fast``         the fast CIFAR-10 family: entropic vs Torch-Pruning vs uniform
``gpu_check``          what only a GPU can time (fast recipe, whole passes, a search)
``cifar_paper``        VGG-16 / ResNet-18 bases at real accuracy
``post_training``      pass + recovery (bn / distill / finetune) without retraining
``vgg_pass``           one whole VGG-16 sparsify pass, timed phase by phase
``latency``            original vs pruned latency (VGG-16 / ResNet-18)
``report``             renders ``benchmarks/results/*.json`` into docs/results.md
=====================  ==============================================================

Retired (the question answered, the code removed, the results kept and rendered with the
commit that has the code: ``benchmarks.report.RETIRED``): ``lenet_diagnostics``,
``moments_dtype``, ``solver_cost``, ``latency_costs``, ``train_speed``, ``budget_hit``,
``lenet_search``.

The pattern: ``benchmarks/NAME.py`` has a docstring (what it measures, the command line) and
a ``main()``; it runs named units through the one experiment runner,
:class:`nas.experiment.Experiment`, into ``benchmarks/results/NAME.json``
(``{"benchmark", "settings", "env", "rows": {KEY: ROW}}``, written after every unit; a rerun
skips the keys it holds, trainings resume per epoch). ``common`` has the environment record
(``common.parser`` / ``common.setup``: ``--quick``, ``--out``, ``--device``, ``--threads``)
and :class:`common.PhaseTimer` (engine steps timed through :mod:`pruning.phases`, never by
wrapping private names). A section in docs/results.md: ``benchmarks/report/NAME.py``'s
``render(runs)`` in ``benchmarks/report/__init__.py``'s ``SECTIONS``, else the JSON rendered
generically; ``python -m benchmarks.report`` rewrites docs/results.md.
"""
