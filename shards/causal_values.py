"""A sample's causal variables in its provenance record: ``json["causal_variables"]``, an object of
variable name -> non-negative integer value (e.g. a pointer-value grid's four digits). Interchange
intervention training reads them with the images; other readers ignore them."""

import json
from collections.abc import Mapping, Sequence

from shards.errors import SampleError

CAUSAL_VARIABLES_KEY = "causal_variables"


def with_causal_values(record: Mapping, values: Mapping[str, int]) -> dict:
    """``record`` (a provenance record) with the causal variables ``values`` added."""
    return {**record, CAUSAL_VARIABLES_KEY: {name: int(value) for name, value in values.items()}}


def decode_causal_values(raw: bytes, names: Sequence[str], key: str) -> list[int]:
    """The values of the variables ``names`` (in that order) from a sample's ``json`` field.

    Raises:
        SampleError: naming the sample, when the field is not JSON or ``causal_values`` refuses the record.
    """
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise SampleError(f"sample {key}: json field is not valid JSON ({error})") from None
    return causal_values(record, names, key)


def causal_values(record: object, names: Sequence[str], key: str) -> list[int]:
    """The values of the variables ``names`` (in that order) from a sample's provenance record.

    Raises:
        SampleError: naming the sample, when the record is not an object, has no ``causal_variables``
            object, lacks one of ``names`` or holds a value that is not a non-negative integer.
    """
    variables = record.get(CAUSAL_VARIABLES_KEY) if isinstance(record, dict) else None
    if not isinstance(variables, dict):
        raise SampleError(f"sample {key}: its json has no {CAUSAL_VARIABLES_KEY} object; the causal model needs "
                          f"the variables {', '.join(names)}")
    values = []
    for name in names:
        value = variables.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SampleError(f"sample {key}: json {CAUSAL_VARIABLES_KEY}.{name} must be a non-negative integer (got {value!r})")
        values.append(value)
    return values
