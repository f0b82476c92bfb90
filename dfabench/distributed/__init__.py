"""DFA's unlocked backward across processes, on ``torch.distributed`` (gloo on CPU, NCCL on GPU).

One process per pipeline stage; every stage holds a contiguous run of the model's blocks, cut right
after a ``FeedbackPoint`` (``placement``). Both methods run the same micro-batched GPipe schedule
(``pipeline``): every micro-batch's forward flows from stage to stage, then

* BP's backward travels back stage by stage (each stage waits for the input gradient of the one above);
* DFA's last stage broadcasts the output errors e, and every stage projects its own ``B_i e`` and runs
  its blocks' backward at once, with no wait for the stages above.

``launch`` starts the processes; ``simulate`` predicts the schedule's step time for 1..64 stages from
measured block times and link figures.
"""
from .pipeline import Pipeline
from .placement import split_points

__all__ = ["Pipeline", "split_points"]
