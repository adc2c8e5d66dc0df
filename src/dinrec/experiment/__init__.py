"""dinrec.experiment: typed experiment configs, the training run, checkpoints and reports.

The library code behind `dinrec train / evaluate / predict / explain / compare / demo`:

- config: ExperimentConfig (frozen sections data, model, training, output, distributed)
  from TOML.
- runner: run_experiment(config, run_dir) -> RunResult, with exact resume.
- checkpoint / recorder: atomic checkpoints every N steps, metrics.jsonl, the best bundle.
- scoring: a bundle + a dataset -> metrics or a scores Parquet file.
- explain / plots: attention weights per behavior, heatmaps and training curves.
- report / ablation / demo_job: RelaImpr tables, the paper's model variants, the demo job.

Example:
    >>> from dinrec.experiment.config import load_config          # doctest: +SKIP
    >>> from dinrec.experiment.runner import run_experiment       # doctest: +SKIP
    >>> config = load_config("configs/ml100k-rating.toml")        # doctest: +SKIP
    >>> result = run_experiment(config, "runs/r1")                # doctest: +SKIP
"""
