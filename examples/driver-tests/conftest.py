# SPDX-License-Identifier: Apache-2.0
# Here so that pytest puts this folder on sys.path: the tests import edu_driver.
