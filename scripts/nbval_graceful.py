"""A pytest plugin for ``make coverage``: nbval shuts each notebook's kernel down gracefully instead of killing it,
so that coverage, running in the kernel, writes its data when the kernel exits (nbval's own ``stop`` calls
``shutdown_kernel(now=True)``, a kill, and the kernels' lines would be missing from the report)."""

from __future__ import annotations


def pytest_configure(config):
    from nbval import kernel

    def stop(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)
        del self.km

    kernel.RunningKernel.stop = stop
