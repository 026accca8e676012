"""What the research notebooks (`notebooks/`) call: settings and tables (`helpers`), the shared
trained router (`router`), read-only views of MLflow, Optuna and the registry
(`tracking_views`), and a local gateway driven through the `inferbase` CLI (`gateway`). Figures
are in `evals.figures`."""
