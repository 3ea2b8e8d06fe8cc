"""The variables of each registered causal model (``train.objective.causal_model``) and how many classes
its output takes, by name. No torch here, so validating a config does not load it; trainers.causal_models
adds the outputs."""

CAUSAL_VARIABLES: dict[str, tuple[str, ...]] = {
    "pointer_value": ("top_left", "top_right", "bottom_left", "bottom_right"),
    "conjunction": ("v1", "v2"),
}

CAUSAL_OUTPUT_CLASSES: dict[str, int] = {
    "pointer_value": 10,  # the pointed-at digit
    "conjunction": 2,
}
