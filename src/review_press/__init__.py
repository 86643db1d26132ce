"""review-press: Markdown posts to a static site, feeds, and an email newsletter.

The public Python API (the CLI is a thin face over it; see docs/api.md)::

    import review_press as rp

    plan, report = rp.build("my-zine")            # out/: site, feeds, emails (changed files only)
    rp.check("my-zine")                           # every validation, writes nothing
    report = rp.publish("my-zine")                # email every due post to everyone due it, once
    status = rp.publish_status("my-zine")         # per post: sent, pending, failed ...

Names are imported on first use, so `import review_press` stays fast.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

# name -> (submodule, attribute): what the package exports, imported on first use.
_EXPORTS: dict[str, tuple[str, str]] = {
    # building
    "check": ("build", "check"),
    "BuildOptions": ("build", "BuildOptions"),
    "Plan": ("build", "Plan"),
    # publishing
    "dry_run": ("publish", "dry_run"),
    "join": ("senders", "join"),
    "send_test": ("publish", "send_test"),
    "publish_status": ("publish", "publish_status"),
    "PublishOptions": ("publish", "PublishOptions"),
    "PublishReport": ("publish", "PublishReport"),
    "StatusReport": ("publish", "StatusReport"),
    # bounces and complaints
    "fetch_bounces": ("bounces.inbox", "fetch_bounces"),
    "FetchReport": ("bounces.inbox", "FetchReport"),
    # configuration and subscribers
    "load_config": ("config", "load_config"),
    "find_site": ("config", "find_site"),
    "Config": ("config", "Config"),
    "Store": ("store", "Store"),
    "open_store": ("store", "open_store"),
    # errors a user can cause
    "PressError": ("errors", "PressError"),
    "PressErrors": ("errors", "PressErrors"),
    "ConfigError": ("errors", "ConfigError"),
    "ContentError": ("errors", "ContentError"),
    "BuildError": ("errors", "BuildError"),
    "DeliveryError": ("errors", "DeliveryError"),
    "StorageError": ("errors", "StorageError"),
}
# Submodules that are also the API's verbs: `review_press.build(root)` calls `build.build(root)`,
# and `review_press.build.BuildOptions` is still the module's name.
_VERBS = ("build", "publish")

__all__ = ["__version__", *_VERBS, *_EXPORTS]


class _VerbModule(types.ModuleType):
    """A submodule that can be called as the function of its own name (`build`, `publish`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    """This package: makes `build` and `publish` callable however they were first imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _VERBS and type(value) is types.ModuleType and value.__name__ == f"{__name__}.{name}":
            value.__class__ = _VerbModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name in _VERBS:
        return importlib.import_module(f".{name}", __name__)  # the import sets (and wraps) the attribute
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
