# Keeper Sync's cloud side (README, "Deploying to the cloud"): the web server, the sync worker
# and the bot in one container, as the user keeper, with keeper.db on the volume at /app/data.
# The same image runs each part alone for the split mode (Procfile). Build: docker build -t keeper-sync .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    KEEPER_DB_PATH=/app/data/keeper.db \
    PORT=8000

RUN groupadd --gid 1000 keeper \
 && useradd --uid 1000 --gid keeper --create-home --home-dir /home/keeper \
        --shell /usr/sbin/nologin keeper

WORKDIR /app
# The requirements alone first, so that a change of code reuses the layer of installed packages.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic reads the settings, which refuse to load without a SECRET_KEY: a random one,
# for this step only. The code stays root's; keeper writes only the data folder.
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
        python manage.py collectstatic --no-input --verbosity 0 \
 && mkdir -p /app/data \
 && chown keeper:keeper /app/data

USER keeper
VOLUME ["/app/data"]
EXPOSE ${PORT}
# /health answers 200 while keeper.db does (503 otherwise). The probe names 127.0.0.1, which
# ALLOWED_HOSTS must then hold; Railway probes healthcheckPath itself (railway.json).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
# migrate --no-input, then the web server, the worker and (with BOT_TOKEN) the bot, until
# SIGTERM, which stops them all within 10 s.
ENTRYPOINT ["python", "deploy/entrypoint.py"]
CMD ["python", "manage.py", "runservice", "--migrate", "--bot"]
