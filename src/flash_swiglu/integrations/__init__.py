"""Integrations with other libraries; each submodule imports its library lazily or not at all.

- ``flash_swiglu.integrations.transformers``: ``patch_hf_model`` / ``unpatch_hf_model``.
"""
