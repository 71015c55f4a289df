"""Training progress: ``tqdm.auto`` bars or plain log lines.

``tqdm.auto`` shows widget bars in JupyterLab / Colab and text bars in a terminal. CI logs want neither (bars
redraw with carriage returns), so ``progress=False`` prints one plain line per epoch, plus one every
``log_every`` steps. The bars move every step, but their loss/accuracy (and the plain lines) show means over the
steps since the training loop last read its statistics from the device (every ``log_every`` steps, else every
50), so that showing progress never makes a GPU step wait. Only rank 0 prints under DDP.
"""

from __future__ import annotations

import sys


class TrainLog:
    """Progress bars (``tqdm.auto``: widgets in JupyterLab/Colab, text in a terminal) or plain lines for CI."""

    def __init__(self, enabled: bool, progress: bool, log_every: int) -> None:
        self.enabled, self.progress, self.log_every = enabled, progress and enabled, log_every
        self.epoch_bar = self.batch_bar = None

    def write(self, msg: str) -> None:
        if not self.enabled:
            return
        if self.epoch_bar is not None:
            from tqdm.auto import tqdm  # deferred: only with progress bars

            tqdm.write(msg)
        else:
            print(msg, flush=True)

    def start(self, epochs: int, first: int) -> None:
        if self.progress:
            from tqdm.auto import tqdm  # deferred: only with progress bars

            self.epoch_bar = tqdm(total=epochs, initial=first, desc="epochs", unit="ep", dynamic_ncols=True,
                                  position=0, file=sys.stdout)

    def set_epochs(self, epochs: int) -> None:
        """The planned epoch count changed (``TrainConfig.fit_budget``)."""
        if self.epoch_bar is not None:
            self.epoch_bar.total = epochs
            self.epoch_bar.refresh()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.progress:
            from tqdm.auto import tqdm  # deferred: only with progress bars

            self.batch_bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                                  dynamic_ncols=True, position=1, file=sys.stdout)

    def advance(self) -> None:
        """One training step done (moves the batch bar; host-side only, reads nothing from the device)."""
        if self.batch_bar is not None:
            self.batch_bar.update(1)

    def step(self, epoch: int, epochs: int, step: int, steps: int, loss: float, acc: float, lr: float) -> None:
        """Show the statistics read from the device after ``step`` (0-based): ``loss`` and ``acc`` are the means
        over the steps since the previous read, ``lr`` is the last step's. In plain mode a line is printed when
        ``step + 1`` is a multiple of ``log_every``."""
        if self.batch_bar is not None:
            self.batch_bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}", lr=f"{lr:.2e}", refresh=False)
        elif self.enabled and self.log_every and (step + 1) % self.log_every == 0:
            print(f"epoch {epoch + 1}/{epochs} step {step + 1}/{steps} loss {loss:.4f} acc {acc:.3f} lr {lr:.2e}",
                  flush=True)

    def end_epoch(self, row: dict, epochs: int, best: float) -> None:
        if self.batch_bar is not None:
            self.batch_bar.close()
            self.batch_bar = None
        if self.epoch_bar is not None:
            self.epoch_bar.update(1)
            self.epoch_bar.set_postfix(train_loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}",
                                       best=f"{best:.3f}")
        msg = (f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:.4f}  "
               f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}  lr {row['lr']:.2e}  "
               f"{row['seconds']:.1f}s  {row['images_per_sec']:.0f} img/s"
               + (f"  (teacher {row['teacher_seconds']:.1f}s)" if "teacher_seconds" in row else "")
               + ("  (partial)" if row.get("partial") else ""))
        self.write(msg)

    def close(self) -> None:
        for bar in (self.batch_bar, self.epoch_bar):
            if bar is not None:
                bar.close()
        self.epoch_bar = self.batch_bar = None
