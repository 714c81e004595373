"""The job ledger: PostgreSQL is the system of record for every job and its stages.

arq only carries a job id from the API to a worker; status, progress, stages, their
checkpoints, errors and results live here, for weeks. Every write a worker makes is
fenced by the attempt number it claimed, so a worker that was presumed dead and comes
back can never overwrite what a newer attempt wrote (`Fenced`).

The API's side is in `jobs`, a running attempt's in `stages` (its writes, as values, in
`writes`), an attempt's end in `ends`, concurrency keys in `concurrency`, the kinds workers publish in `kinds`; what they share in `common`.
"""

from service.ledger.common import (
    FINISHED,
    JOB_COLUMNS,
    UNFINISHED,
    Fenced,
    new_job_id,
    parse_job_id,
    qualified,
    settle_stages,
)
from service.ledger.concurrency import Waiting, claim_within_limit, has_room
from service.ledger.ends import (
    cancel_running,
    finish_job,
    finish_jobs,
    hand_back,
    requeue,
    running_jobs_of,
    stale_jobs,
    touch,
)
from service.ledger.jobs import (
    JobFilter,
    NewJob,
    count_jobs,
    create_job,
    create_jobs,
    decode_cursor,
    encode_cursor,
    find_jobs,
    get_job,
    get_stages,
    list_jobs,
    request_cancel,
    request_cancels,
    retry_job,
    retry_jobs,
)
from service.ledger.kinds import KindDescription, list_kinds, publish
from service.ledger.stages import (
    claim,
    claim_many,
    finish_stage,
    finish_stages,
    finished_stages,
    save_checkpoint,
    set_progress,
    start_stage,
    start_stages,
)
from service.ledger.writes import JobEnd, StageEnd, StageStart, fenced

__all__ = [
    "FINISHED",
    "JOB_COLUMNS",
    "UNFINISHED",
    "Fenced",
    "JobEnd",
    "JobFilter",
    "KindDescription",
    "NewJob",
    "StageEnd",
    "StageStart",
    "Waiting",
    "cancel_running",
    "claim",
    "claim_many",
    "claim_within_limit",
    "count_jobs",
    "create_job",
    "create_jobs",
    "decode_cursor",
    "encode_cursor",
    "fenced",
    "find_jobs",
    "finish_job",
    "finish_jobs",
    "finish_stage",
    "finish_stages",
    "finished_stages",
    "get_job",
    "get_stages",
    "hand_back",
    "has_room",
    "list_jobs",
    "list_kinds",
    "new_job_id",
    "parse_job_id",
    "publish",
    "qualified",
    "request_cancel",
    "request_cancels",
    "requeue",
    "retry_job",
    "retry_jobs",
    "running_jobs_of",
    "save_checkpoint",
    "set_progress",
    "settle_stages",
    "stale_jobs",
    "start_stage",
    "start_stages",
    "touch",
]
