/* Calendar arithmetic shared by the RFC 3339 and HTTP-date parsers.
 *
 * Private to src/: proleptic Gregorian calendar, no libc time functions, so
 * the result depends neither on the locale nor on TZ. */
#ifndef ARGOWAIT_CIVIL_H
#define ARGOWAIT_CIVIL_H

#include <stdbool.h>
#include <stdint.h>

static inline bool aw_civil_is_leap(int64_t year) {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Days in month (1..12) of year; 0 for a month out of range. */
static inline int aw_civil_days_in_month(int64_t year, int month) {
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12) return 0;
  if (month == 2 && aw_civil_is_leap(year)) return 29;
  return days[month - 1];
}

/* Days since 1970-01-01 of a valid date. Counting years from March puts the
 * leap day last, so each 400-year era has the same shape. */
static inline int64_t aw_civil_days_from_date(int64_t year, int month,
                                              int day) {
  int64_t y = month <= 2 ? year - 1 : year;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t year_of_era = y - era * 400;                          /* 0..399 */
  int64_t month_from_march = month > 2 ? month - 3 : month + 9; /* 0..11 */
  int64_t day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
  int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

/* Exactly n ASCII digits at s, as a number (n <= 9). */
static inline bool aw_civil_digits(const char *s, int n, int *out) {
  int value = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  *out = value;
  return true;
}

#endif
