"""Names shared by the launchers, the references and the benchmark (importable without Triton)."""

ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu", "swiglu_oai")
LAYOUTS = ("concat", "interleaved")

# gpt-oss defaults for activation="swiglu_oai".
OAI_ALPHA = 1.702
OAI_LIMIT = 7.0
