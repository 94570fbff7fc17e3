"""Fakes of our own ``SignalSource`` interface (no Kubernetes API server can run here), for the autoscale job's
tests: unit tests with a fake lifecycle, and in-process ticks against the real IM."""

from __future__ import annotations

from provisioner.autoscale.signals import Reading, SourceContext


class FakeKube:
    """A Kubernetes source: ``pending`` unschedulable pods, the workers in ``idle`` running nothing of their own
    (their idle-since times carried over as the real source carries them), or ``fail`` raised, tick by tick."""

    name = "kubernetes"

    def __init__(self) -> None:
        self.idle: set[str] = set()
        self.pending = 0
        self.fail: BaseException | None = None
        self.contexts: list[SourceContext] = []

    def read(self, ctx: SourceContext) -> Reading:
        self.contexts.append(ctx)
        if self.fail is not None:
            raise self.fail
        idle = {str(w.id): ctx.idle_since.get(str(w.id), ctx.now.isoformat()) for w in ctx.workers if w.id in self.idle}
        return Reading(pending_pods=self.pending, oscar_job_pods=0, idle_since=idle)
