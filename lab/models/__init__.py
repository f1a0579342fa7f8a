"""Model doubles the lab mirror publishes (lab/mirror.py): see generate.py."""
