"""One context-manager shape for the things we open: ``with thing:`` closes it at the end."""

from __future__ import annotations

from typing import Self


class Closing:
    """Mixin: ``with obj:`` gives ``obj`` and calls ``obj.close()`` on the way out
    (:class:`newsletter.state.State`, the delivery backends, the instance lock)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
