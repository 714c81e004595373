# Conveyor: one image for the API and the workers (the command picks the role).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 conveyor
WORKDIR /app

COPY requirements.lock pyproject.toml README.md ./
# Bytecode compiled into the image: a container would otherwise compile its imports at every start.
RUN pip install --no-cache-dir uv \
 && uv pip install --system --no-cache --compile-bytecode -r requirements.lock

COPY alembic.ini worker.py ./
COPY migrations ./migrations
COPY service ./service
COPY pipelines ./pipelines
RUN uv pip install --system --no-cache --compile-bytecode --no-deps .

USER conveyor
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
# API by default; workers run `arq worker.WorkerSettings`, migrations `alembic upgrade head`.
CMD ["uvicorn", "service.app:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", \
     "--http", "service.api.request_heads:BoundedHttpProtocol"]
