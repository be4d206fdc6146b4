"""Config-driven equality, hashing and repr for the package's schedules and techniques."""

import json


class Serializable:
    """Base of Keras-serializable objects defined by their flat `get_config()`.

    Two objects are equal when they have the same class and config, which is
    what `sparsify` and global pruning compare, and `from_config` is
    `cls(**config)` as in Keras.
    """

    def get_config(self):
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `get_config()`."
        )

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, json.dumps(self.get_config(), sort_keys=True)))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{self.__class__.__name__}({args})"
