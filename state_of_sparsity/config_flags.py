"""absl flags generated from a frozen config dataclass: one flag per field, same name, default and type.

Scripts validate the parsed flags once into the config (its `__post_init__` raises ValueError on bad
values) and nothing below `main` reads flags. Optional fields (default None) become flags that are
"not given" unless passed, which is how the transformer trainer forwards only the hparams a user set.
"""

import dataclasses
import typing

from absl import app
from absl import flags


def _base_type(annotation):
    """int for `int` and `Optional[int]`, and so on."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation


def define_flags(config_cls, choices=None, flag_values=flags.FLAGS, module_name=None):
    """Defines one flag per field of `config_cls` in `flag_values`; `choices` makes enum flags."""
    choices = choices or {}
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        name, default, kind = field.name, field.default, _base_type(hints[field.name])
        help_text = f"See {config_cls.__module__}.{config_cls.__name__} ({name})."
        kwargs = dict(flag_values=flag_values, module_name=module_name)
        if name in choices:
            flags.DEFINE_enum(name, default, list(choices[name]), help_text, **kwargs)
        elif kind is bool:
            flags.DEFINE_bool(name, default, help_text, **kwargs)
        elif kind is int:
            flags.DEFINE_integer(name, default, help_text, **kwargs)
        elif kind is float:
            flags.DEFINE_float(name, default, help_text, **kwargs)
        else:
            flags.DEFINE_string(name, default, help_text, **kwargs)


def config_from_flags(config_cls, flag_values=flags.FLAGS):
    """The validated config of the parsed flags; a bad value becomes a one-line usage error."""
    values = {field.name: flag_values[field.name].value for field in dataclasses.fields(config_cls)}
    try:
        return config_cls(**values)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
