"""The project's Kedro hooks, one room per concern (``settings.HOOKS`` registers
them):

- ``checks``: the settings checked before anything runs, one run per data root;
- ``spark``: the one SparkSession;
- ``mlflow_run``: the MLflow parent run, killed runs marked, aliases moved on
  success;
- ``timings``: each node's time and memory for the benchmarks;
- ``summary``: the lines a run ends with.
"""
