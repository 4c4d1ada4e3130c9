"""Console state. Modules without a `qt_` prefix import no Qt (checked by import-linter) and are
tested without a display; `qt_*` modules adapt them to Qt item models."""
