"""Registering is no longer a training phase: the hand-off to the registry is part of finishing the job."""

from django.db import migrations, models


def registering_to_exporting(apps, schema_editor):
    apps.get_model("training_app", "TrainingJob").objects.filter(phase="registering").update(phase="exporting")


class Migration(migrations.Migration):

    dependencies = [
        ("training_app", "0002_snapshot_size"),
    ]

    operations = [
        migrations.RunPython(registering_to_exporting, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="trainingjob",
            name="phase",
            field=models.CharField(
                choices=[
                    ("waiting", "Waiting for a worker"), ("preparing", "Preparing data"),
                    ("features", "Extracting features"), ("training", "Training"), ("evaluating", "Evaluating"),
                    ("exporting", "Exporting"), ("done", "Done"),
                ],
                default="waiting",
                max_length=12,
            ),
        ),
    ]
