"""PDF reports: one radiograph (:func:`write_report`, :func:`report`), a cohort
(:func:`write_cohort_report`) or two films of one patient compared (:func:`write_compare_report`).

::

    import cephspine
    from cephspine.reports import report, write_cohort_report, write_report

    a = report("scan.dcm", "scan.pdf", kind="ceph")           # analyse, then write the PDF
    write_report(a, "again.pdf", image="scan.dcm")             # from an existing Analysis
    write_cohort_report(table, "cohort.pdf", kind="ceph")      # rows of Analysis.to_row() + error rows

A single-image report is one A4 page (a ceph report adds a second page with the named
cephalometric analyses, their norms, flags and sources): the radiograph with the landmarks coloured by
confidence and the lines that define the measures (ceph) or the end vertebrae of each Cobb
curve (spine), labelled so that no label overlaps another or a landmark; beside and below
it the measures with their normal ranges and types, the low-confidence landmarks, every
warning, and where the image, the pixel spacing and the model came from. DICOM patient
identifiers appear only when the analysis carries them (``include_identifiers=True``).
Every page states that the report is for research use.

PDFs are written atomically: rendered into a temporary file next to the target and moved
into place only when complete, so a failure leaves no file behind and never damages an
existing report. A report that cannot be written raises
:class:`~cephspine.errors.OutputError`; bad arguments raise
:class:`~cephspine.errors.InvalidArgumentError`.

The package's modules: ``single`` (the one-image report), ``ceph`` and ``spine`` (what
each kind draws and tabulates), ``cohort`` (the cohort report), ``compare`` (the
comparison of two cephalograms, superimposed on S–N), and the private ``_pdf``
(styles, tables, atomic writing), ``_image`` (the annotated radiograph) and ``_labels``
(label placement).
"""

from __future__ import annotations

from cephspine.reports._image import HIGH_CONFIDENCE, MAX_IMAGE_SIDE_PX
from cephspine.reports._pdf import RESEARCH_NOTICE
from cephspine.reports.ceph import CEPH_LINES  # noqa: F401 - the lines drawn on a cephalogram
from cephspine.reports.cohort import write_cohort_report
from cephspine.reports.compare import write_compare_report
from cephspine.reports.single import report, write_report

__all__ = [
    "HIGH_CONFIDENCE",
    "MAX_IMAGE_SIDE_PX",
    "RESEARCH_NOTICE",
    "report",
    "write_cohort_report",
    "write_compare_report",
    "write_report",
]
