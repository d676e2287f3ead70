"""Project settings: hooks and how configuration is loaded.

See https://docs.kedro.org/en/stable/configure/configuration_basics/
"""

import warnings
from pathlib import Path

# Libraries' warnings no user of this project can act on, filtered before the
# libraries are imported: omegaconf's deprecation of the call Kedro and
# kedro-mlflow make, and MLflow's notes on type hints of its own model classes
# (printed whenever mlflow.pyfunc is imported).
for _message in (
    r"register_new_resolver\(\) is deprecated",
    r"Add type hints to the `predict` method",
    r"Any type hint is inferred as AnyType",
):
    warnings.filterwarnings("ignore", message=rf"(?:\x1b\[[\d;]*m)?{_message}")

from omegaconf.resolvers import oc  # noqa: E402

from book_recommender.hooks.checks import (  # noqa: E402
    ParameterCheckHooks,
    RunLockHooks,
)
from book_recommender.hooks.mlflow_run import AliasHooks, MlflowRunHooks  # noqa: E402
from book_recommender.hooks.spark import SparkHooks  # noqa: E402
from book_recommender.hooks.summary import RunSummaryHooks  # noqa: E402
from book_recommender.hooks.timings import NodeTimingHooks  # noqa: E402

# The SparkSession is created once, by SparkHooks, before any dataset needs it.
# Pluggy calls the hooks last registered first: settings are checked before Spark
# starts. The parameter check and RunLockHooks are marked tryfirst: they run
# before the plugins' hooks (kedro-mlflow's set-up), the check first.
HOOKS = (
    RunSummaryHooks(),
    AliasHooks(),
    SparkHooks(),
    NodeTimingHooks(),
    MlflowRunHooks(),
    RunLockHooks(),
    ParameterCheckHooks(),
)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "spark": ["spark*", "spark*/**"],
        # kedro-mlflow adds the same pattern in its own hook; the run lock's
        # hook reads the tracking URI before that hook runs.
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
    # An environment holds only what differs from base: one overridden key keeps
    # its siblings from base (parameters, globals.yml, mlflow.yml).
    "merge_strategy": {"parameters": "soft", "globals": "soft", "mlflow": "soft"},
    # ${project_dir:} is the folder `kedro run` runs in (Kedro resolves relative
    # data paths against it too). mlflow.yml uses it to make the sqlite URI
    # absolute: MLflow caches stores by URI, so a relative one would follow the
    # first project a process used.
    "custom_resolvers": {
        "project_dir": lambda: Path.cwd().as_posix(),
        # ${oc.env:NAME,default} in every config file, not only credentials: the
        # movielens and cluster environments read folders and URLs from it.
        "oc.env": oc.env,
    },
}
