"""Forms of the console: they validate query strings and posts; the
selectors and services do the work."""

from django import forms
from django.utils.translation import gettext_lazy as _

from sessions.web.i18n import STATUS_LABELS


class SessionFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("Any status")), *STATUS_LABELS.items()],
    )
    date_from = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    external_ref = forms.CharField(
        label=_("External reference"),
        required=False,
        max_length=128,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError(_("“From” must not be after “To”."), code="date_range")
        return data


class ClinicPickForm(forms.Form):
    clinic = forms.ChoiceField(label=_("Clinic"), widget=forms.RadioSelect)

    def __init__(self, *args: object, memberships: list, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["clinic"].choices = [(str(m.clinic_id), m.clinic.name) for m in memberships]
