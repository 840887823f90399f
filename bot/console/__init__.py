"""The county staff's web console at /console (BOT_CONSOLE=1): accounts and roles, case search and
the case page, the dashboard, the printed application form and the audit log (bot/console/web.py)."""
