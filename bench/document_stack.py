"""The document benchmark's stack, each part in its own process: PostgreSQL, Redis, S3
(moto), Textract, an OpenAI-compatible LLM (bench.servers, at realistic latencies), the
API (one process a core, as deployed) and one worker; and the CPU each has used."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import boto3
import psutil

from bench.cpu import child_cpu, own_cpu, postmaster, tree_cpu
from service.config import load_settings
from service.databases.migrate import upgrade_async
from testkit import postgres
from testkit.llm_servers import API_KEY
from testkit.net import free_port, wait_for_port
from testkit.processes import api_command
from testkit.redis_server import RedisServer
from testkit.s3_server import CREDENTIALS
from testkit.service import new_tenant
from testkit.textract_server import ROLE_ARN, notice_channel

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "conveyor-bench"


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def spawn_server(kind: str, *options: str) -> tuple[subprocess.Popen, str]:
    """One of bench.servers in its own process, and the URL it printed."""
    process = spawn([sys.executable, "-m", "bench.servers", kind, *options], {**os.environ, **CREDENTIALS})
    return process, process.stdout.readline().strip()


class Stack:
    """PostgreSQL database, Redis, S3, Textract, LLM, the API and one worker."""

    def __init__(
        self,
        textract_seconds: float,
        llm_seconds: float,
        uploads_at_once: int,
        api_processes: int,
        textract_notices: bool,
    ) -> None:
        self.textract_seconds, self.llm_seconds = textract_seconds, llm_seconds
        self.textract_notices = textract_notices
        self.uploads_at_once, self.api_processes = uploads_at_once, api_processes
        self.processes: list[subprocess.Popen] = []
        self.named: dict[str, psutil.Process] = {}
        self.redis = RedisServer()
        self.postgres = contextlib.ExitStack()
        self.database: str | None = None

    async def start(self) -> None:
        self.redis.start()
        os.environ.update(CREDENTIALS)
        self.postgres.enter_context(postgres.private_server())
        self.postgres_server = await postmaster(postgres.admin_url())
        self.database = await postgres.create_database("conveyor_bench")
        self.database_url = postgres.database_url(self.database)
        await upgrade_async(self.database_url)
        _, s3_url = self._server("S3", "s3", "--put-latency", "0.05", "--latency", "0.01")
        boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket=BUCKET)
        notices: dict[str, str] = {}
        textract_options = ["--s3", s3_url, "--seconds", str(self.textract_seconds)]
        if self.textract_notices:
            _, aws_url = self._server("SNS+SQS", "notices", "--put-latency", "0")
            topic, queue_url = notice_channel(aws_url)
            textract_options += ["--sns", aws_url]
            notices = {
                "TEXTRACT_SNS_TOPIC_ARN": topic,
                "TEXTRACT_SNS_ROLE_ARN": ROLE_ARN,
                "TEXTRACT_SQS_QUEUE_URL": queue_url,
                "SQS_ENDPOINT_URL": aws_url,
            }
        _, textract_url = self._server("Textract", "textract", *textract_options)
        _, llm_url = self._server("LLM", "llm", "--latency", str(self.llm_seconds))
        self.env = {
            **os.environ,
            **CREDENTIALS,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "STORAGE_URL": f"s3://{BUCKET}/documents",
            "S3_ENDPOINT_URL": s3_url,
            "OCR_PROVIDER": "textract",
            "TEXTRACT_ENDPOINT_URL": textract_url,
            "REGION": "us-east-1",
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": llm_url,
            "LLM_API_KEY": API_KEY,
            "LLM_MODEL": "bench",
            "LLM_RATE_PER_MINUTE": "6000",
            "LOG_LEVEL": "WARNING",
            "TENANT_MAX_QUEUED_JOBS": "100000",
            "RATE_LIMIT_PER_MINUTE": "1000000",
            **notices,
        }
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.processes.append(
            spawn(api_command(port, "--log-level", "warning", "--workers", str(self.api_processes)), self.env)
        )
        wait_for_port(port, timeout=30)
        self.named["API"] = psutil.Process(self.processes[-1].pid)
        self.worker = spawn([sys.executable, "-m", "arq", "worker.WorkerSettings"], self.env)
        self.processes.append(self.worker)
        self.worker_process = self.named["worker"] = psutil.Process(self.worker.pid)
        self.named["Redis"] = psutil.Process(self.redis.process.pid)
        self.named["client"] = psutil.Process()
        settings = load_settings(database_url=self.database_url, redis_url=self.redis.url)
        _, self.key = await new_tenant(settings, "bench")

    def _server(self, name: str, kind: str, *options: str) -> tuple[subprocess.Popen, str]:
        process, url = spawn_server(kind, *options)
        self.processes.append(process)
        self.named[name] = psutil.Process(process.pid)
        return process, url

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of each process on the benchmark's cores: ours, the test servers,
        PostgreSQL's server (its backends, ended ones included) and this client."""
        seconds = {name: own_cpu(process) for name, process in self.named.items()}
        seconds["API"] += child_cpu(self.named["API"])  # uvicorn's workers
        seconds["page readers"] = child_cpu(self.worker_process)
        seconds["PostgreSQL"] = tree_cpu(self.postgres_server)
        return seconds

    async def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis.stop()
        if self.database:
            await postgres.drop_database(self.database)
        self.postgres.close()
