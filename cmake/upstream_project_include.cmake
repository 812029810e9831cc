# Injected (CMAKE_PROJECT_INCLUDE) into the upstream ROS 2 packages that scripts/install_upstream.sh builds
# against the PyPI wheels: our two work-arounds, without editing their sources. The include-directory fix is
# deferred to the end of the top-level directory, after the package's own find_package() calls.
include(${CMAKE_CURRENT_LIST_DIR}/pypi_ros_workarounds.cmake)
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL attn6d_fix_pypi_python_include_dirs)
