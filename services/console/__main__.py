"""``python -m services.console``: run the console service (settings from FR_* variables)."""

from services.console.app import build_service

if __name__ == "__main__":
    build_service().run()
