@echo off
rem The Control Room agent (README, "The Control Room agent on a desktop"): it writes the
rem server's discoveries into this desktop's VH-Database.db and uploads its catalog, calling out
rem only. Settings come from .env in the project folder (AGENT_SERVER_URL, AGENT_TOKEN,
rem HAVEN_DB_PATH); arguments are passed on (for example --once).
setlocal
cd /d "%~dp0.."
if not exist ".venv\Scripts\python.exe" (
    echo Making .venv and installing the requirements, once...
    py -3.11 -m venv .venv 2>nul || python -m venv .venv
    if errorlevel 1 goto :nopython
    ".venv\Scripts\python.exe" -m pip install --disable-pip-version-check -r requirements.txt
    if errorlevel 1 goto :failed
)
".venv\Scripts\python.exe" manage.py haven_agent %*
exit /b %errorlevel%

:nopython
echo Python 3.11 was not found: install it from python.org, with "Add python.exe to PATH".
exit /b 1

:failed
echo Installing the requirements failed; see the messages above.
exit /b 1
