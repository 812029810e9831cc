# Work-arounds for building ROS 2 interfaces against the PyPI ROS 2 wheels (a venv instead of /opt/ros).
# In a sourced ROS 2 installation both are no-ops.

# 1. A venv is an ament prefix, but nothing sources it: point AMENT_PREFIX_PATH / CMAKE_PREFIX_PATH at the
#    prefix of the Python that runs this build, or rosidl finds no typesupport ("No 'rosidl_typesupport_c' found").
if(NOT DEFINED ENV{AMENT_PREFIX_PATH})
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c "import sys; print(sys.prefix)"
    OUTPUT_VARIABLE _attn6d_python_prefix OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(ENV{AMENT_PREFIX_PATH} "${_attn6d_python_prefix}")
  list(APPEND CMAKE_PREFIX_PATH "${_attn6d_python_prefix}")
endif()

# 2. The wheels' exported *__rosidl_generator_py targets carry the include directories of the manylinux
#    interpreter that built them (/opt/python/cp311-cp311/...), which do not exist here. Call this after
#    rosidl_generate_interfaces() to point them at this interpreter's Python and NumPy headers.
function(attn6d_fix_pypi_python_include_dirs)
  get_property(_imported DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _imported)
    if(_target MATCHES "__rosidl_generator_py$")
      get_target_property(_include ${_target} INTERFACE_INCLUDE_DIRECTORIES)
      if(_include AND _include MATCHES "/opt/python/")
        set_target_properties(${_target} PROPERTIES
          INTERFACE_INCLUDE_DIRECTORIES "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
      endif()
    endif()
  endforeach()
endfunction()
