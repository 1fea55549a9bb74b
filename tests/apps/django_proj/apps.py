from django.apps import AppConfig


class DjangoProjConfig(AppConfig):
    name = "tests.apps.django_proj"
    label = "django_proj"
    default_auto_field = "django.db.models.BigAutoField"
