"""The taskd Python SDK (design.md §3): submit and follow tasks from Python.

```python
from taskd.client import TaskSchedulerClient, Priority
client = TaskSchedulerClient()                     # 127.0.0.1:50051; TASKD_SERVER overrides
task = client.submit_task(priority=Priority.HIGH, payload=json.dumps({"data": 1}), timeout=300)
client.get_task(task.id).state
```
"""

from taskd.client.client import (
    AsyncStream,
    AsyncTaskSchedulerClient,
    SyncStream,
    TaskSchedulerClient,
)
from taskd.client.errors import (
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    Overloaded,
    TaskdClientError,
    TaskFailed,
    TooLarge,
    Unavailable,
)
from taskd.client.task import Attempt, Priority, Task, TaskEvent, TaskState
from taskd.client.worker import Retry, Worker

__all__ = [
    "AsyncStream",
    "AsyncTaskSchedulerClient",
    "Attempt",
    "Conflict",
    "DeadlineExceeded",
    "InvalidArgument",
    "NotFound",
    "Overloaded",
    "Priority",
    "Retry",
    "SyncStream",
    "Task",
    "TaskEvent",
    "TaskFailed",
    "TaskSchedulerClient",
    "TaskState",
    "TaskdClientError",
    "TooLarge",
    "Unavailable",
    "Worker",
]
