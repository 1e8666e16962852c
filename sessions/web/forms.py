"""Forms of the console: they validate query strings and posts; the
selectors and services do the work."""

from datetime import date

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils.translation import gettext_lazy as _

from sessions.search import QUERY_MAX_CHARS
from sessions.services import CONSENT_NOTE_MAX
from sessions.web.i18n import STATUS_LABELS

# Dates far outside any consultation would overflow when the day's start is
# converted between the local time zone and UTC (a 500, not an answer).
_DATE_BOUNDS = [MinValueValidator(date(2000, 1, 1)), MaxValueValidator(date(9000, 12, 31))]


class SessionFilterForm(forms.Form):
    q = forms.CharField(
        label=_("Search transcripts"),
        required=False,
        max_length=QUERY_MAX_CHARS,
        help_text=_("Words or “quoted phrases”, Japanese or English; every one must occur."),
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("Any status")), *STATUS_LABELS.items()],
    )
    date_from = forms.DateField(
        label=_("From"), required=False, validators=_DATE_BOUNDS, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To"), required=False, validators=_DATE_BOUNDS, widget=forms.DateInput(attrs={"type": "date"})
    )
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


class ConsentForm(forms.Form):
    method = forms.ChoiceField(
        label=_("How the patient agreed"),
        choices=[("verbal", _("The patient agreed verbally")), ("written", _("The patient signed a consent form"))],
        widget=forms.RadioSelect,
    )
    note = forms.CharField(label=_("Consent note (optional)"), required=False, max_length=CONSENT_NOTE_MAX)


class ClinicPickForm(forms.Form):
    clinic = forms.ChoiceField(label=_("Clinic"), widget=forms.RadioSelect)

    def __init__(self, *args: object, memberships: list, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # The slug is unique and set by platform staff at creation; names are
        # free text a clinic admin can change, so two clinics may look alike.
        self.fields["clinic"].choices = [(str(m.clinic_id), f"{m.clinic.name} ({m.clinic.slug})") for m in memberships]
