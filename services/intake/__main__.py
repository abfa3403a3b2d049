"""``python -m services.intake``: run the intake service (settings from FR_* variables)."""

from services.intake.app import build_service

if __name__ == "__main__":
    build_service().run()
