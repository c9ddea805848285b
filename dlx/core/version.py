"""The version, and process flags: facts about this process that any layer may read.

OWNS_PROCESS is True in a process dlx itself runs (the dlx command, a worker), False where
dlx is a library in someone's program: only its own processes skip torch's torch._dynamo
imports (optim.skip_dynamo_wrappers), which a user's torch.compile may rely on.
"""

__version__ = "0.1.0"
OWNS_PROCESS = False
