import importlib

import distillcore


def test_every_public_name_resolves_to_its_module_object():
    for name in distillcore.__all__:
        value = getattr(distillcore, name)
        module = getattr(value, "__module__", None)
        assert module is not None and module.startswith("distillcore."), name
        assert getattr(importlib.import_module(module), name) is value
