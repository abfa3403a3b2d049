"""``python -m services.access``: run the access service (settings from FR_* variables)."""

from services.access.app import build_service

if __name__ == "__main__":
    build_service().run()
