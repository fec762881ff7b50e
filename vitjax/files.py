"""JSON files vitjax keeps or is given (a checkpoint's `config.json` and `preprocessor_config.json`,
a workdir's `config.json` and `data_split.json`, `vitjax_model.json`), read with every failure named
by the file and the fix, and the JSON object of a config."""

from __future__ import annotations

import json

from vitjax.errors import BadValue


def read_json(path: str, what: str = "") -> dict:
    """The JSON object in `path`; a file that is not one is named with how to fix it."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadValue(f"{path} is not valid JSON ({e}); {what or 'restore the file or write it again'}.") \
            from None
    if not isinstance(value, dict):
        raise BadValue(f"{path} holds a JSON {type(value).__name__}, not an object; "
                       f"{what or 'restore the file or write it again'}.")
    return value


def config_dict(config) -> dict:
    """An `ml_collections.ConfigDict` as the plain JSON object a workdir's `config.json` holds (a value
    JSON cannot hold becomes its string)."""
    return json.loads(config.to_json_best_effort())
