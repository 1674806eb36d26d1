from django.apps import AppConfig
from django.db.models.signals import post_migrate

REAPER_SCHEDULE_NAME = "training: fail jobs whose worker was lost"


def ensure_reaper_schedule(using: str = "default", **kwargs) -> None:
    """Schedule the stale-job reaper every minute on the default cluster (idempotent)."""
    from django.db import connections
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # django_q is not migrated yet; the next migrate creates the schedule
    Schedule.objects.using(using).update_or_create(
        name=REAPER_SCHEDULE_NAME,
        defaults={
            "func": "training_app.tasks.reap_stale_jobs",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
            "cluster": None,  # None: the default cluster runs it
        },
    )


class TrainingAppConfig(AppConfig):
    name = "training_app"
    verbose_name = "Training"

    def ready(self) -> None:
        from datasets_app.stats import training_needs
        from training_app import cluster
        from training_app.ml.data import MIN_CLIPS_PER_LABEL

        # Training owns the rule; the dataset pages flag labels below it (datasets never import training).
        training_needs.min_clips_per_label = MIN_CLIPS_PER_LABEL

        post_migrate.connect(ensure_reaper_schedule, sender=self, dispatch_uid="training-reaper-schedule")
        if cluster.is_qcluster_process():
            cluster.die_with_parents()
