"""Project settings: hooks and how configuration is loaded.

See https://docs.kedro.org/en/stable/configure/configuration_basics/
"""

from pathlib import Path

from omegaconf.resolvers import oc

from book_recommender.hooks import (
    AliasHooks,
    MlflowRunHooks,
    NodeTimingHooks,
    ParameterCheckHooks,
    RunLockHooks,
    SparkHooks,
)

# The SparkSession is created once, by SparkHooks, before any dataset needs it.
# Pluggy calls the hooks last registered first: settings are checked before Spark
# starts. The parameter check and RunLockHooks are marked tryfirst: they run
# before the plugins' hooks (kedro-mlflow's set-up), the check first.
HOOKS = (
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
